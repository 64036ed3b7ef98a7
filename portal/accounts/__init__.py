"""People, accounts, roles and sign-in."""
