"""What an account's owner does: sign up (`accounts`), manage keys (`api_keys`) and read usage
(`usage`), through one `KeyManager` with the keys service's rules. Handlers are given what they
need by Litestar's dependency injection (`dependencies`)."""
