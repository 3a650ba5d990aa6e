from mrrec_edge.cli import main

main()
