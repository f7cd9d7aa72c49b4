"""Push bridge: wakes the relatives' mobile app for a call and reports its new SIP contacts.

main.py wires the process; requests.py (the kl:wake stream's entries), stream.py (the
consumer group), wakes.py (pushing and cancelling), contacts.py (AMI ContactStatus ->
publish and reach key), devices.py (the device directory), records.py (per-call attempt
records), inflight.py (calls waiting now); providers/ talks to FCM, APNs and HMS."""
