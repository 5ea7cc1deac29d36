"""Development tools: the demo walkers and the seeder. Production code never imports them."""
