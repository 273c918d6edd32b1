from capsule.cli import main

main()
