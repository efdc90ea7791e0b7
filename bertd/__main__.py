from bertd.cli.main import main

raise SystemExit(main())
