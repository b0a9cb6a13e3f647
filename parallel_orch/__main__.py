from parallel_orch.cli import main

if __name__ == "__main__":  # a Dask LocalCluster's worker processes import this module again
    main()
