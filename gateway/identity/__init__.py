"""Who sent a hit: client IP behind proxies, first-party cookies, user agent, geo."""
