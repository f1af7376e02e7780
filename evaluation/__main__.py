from .simulated import main

raise SystemExit(main())
