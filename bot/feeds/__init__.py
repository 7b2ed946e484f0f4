"""Live feeds: a wiki's changes, filtered, posted to a Discord channel as they arrive (`!watch`)."""
