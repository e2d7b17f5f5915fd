from musicgen_cli.cli.app import main

main()
