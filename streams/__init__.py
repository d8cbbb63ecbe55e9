"""Credit-transport: faust shell (app, settings, topics, codecs, agents, CLI)."""
