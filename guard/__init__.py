"""The SIP guard: repeated SIP authentication failures from one address block it for a while."""
