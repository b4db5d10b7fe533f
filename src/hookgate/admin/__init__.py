"""Admin API: operators read what happened (events, rejections, decisions)."""
