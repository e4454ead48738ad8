"""The engine that runs the graph outside the Dagster daemon: the Dagster instance of a data
directory (:mod:`.instance`), the run plan read from the graph (:mod:`.plan`), the in-process
runner behind the CLI (:mod:`.runner`), the daily path (:mod:`.daily`) and report building
(:mod:`.reporting`). ``quant_assets.defs`` holds only what Dagster loads."""
