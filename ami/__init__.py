"""Asterisk Manager Interface adapter."""
