from banditlab.cli.app import main

main()
