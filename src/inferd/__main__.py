from inferd.cli.main import main

main()
