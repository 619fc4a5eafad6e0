from musdpay.cli import main

main()
