"""`python -m symnets_deploy.cli`: the same as the `symnets` command."""

from symnets_deploy.cli.main import main

main()
