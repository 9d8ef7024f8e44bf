from mtv_register.cli import main

main()
