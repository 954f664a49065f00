from neuromod_rl.experiment.reproduce import main

raise SystemExit(main())
