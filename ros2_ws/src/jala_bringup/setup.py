from glob import glob

from setuptools import setup

package_name = "jala_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=[package_name],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=["setuptools", "PyYAML"],
    zip_safe=True,
    maintainer="JALA robot runtime",
    maintainer_email="jala@example.com",
    description="JALA bringup: node graph, launch files, parameters, loopback DDS profile, runner",
    license="Apache-2.0",
    entry_points={"console_scripts": ["run_task = jala_bringup.run:main"]},
)
