from neuromod_rl.studies.command import main

raise SystemExit(main())
