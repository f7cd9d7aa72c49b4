"""Push bridge: wakes the mobile app and waits for its SIP registration (later issue)."""
