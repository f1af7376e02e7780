from setuptools import setup

package_name = "jala_ros"
executables = ["camera_node", "arm_node", "hand_node", "policy_node", "supervisor_node", "sim_devices", "recorder_node", "teleop_node"]

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="JALA robot runtime",
    maintainer_email="jala@example.com",
    description="JALA runtime nodes (camera, policy, arm, hand, supervisor, simulated devices)",
    license="Apache-2.0",
    entry_points={"console_scripts": [f"{name} = {package_name}.{name}:main" for name in executables]},
)
