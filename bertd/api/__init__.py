"""Thin HTTP and WebSocket handlers: parse the request, call the state or runtime layer, answer.
May import schema/, state/, runtime/ and server/ helpers; no SQL and no training code here."""
