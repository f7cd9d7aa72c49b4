"""The reconciler: settles attempts whose hangup path never ran, from Asterisk's event log."""
