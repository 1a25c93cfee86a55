"""What every AITBC process runs on: NATS connections and followers (`bus`), the FastStream
broker of a service (`broker`), the database engine and migrations (`sql`), and starting and
stopping background work (`process`). The wire contracts are in `aitbc_contracts`."""
