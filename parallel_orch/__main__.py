from parallel_orch.cli import main

main()
