"""sforg: a Salesforce org emulator (HTTPS) that real clients such as simple-salesforce cannot tell
from an org.

Tests use `sforg.testing.running_org(...)` and `sforg.testing.Admin`; see sforg/README.md.
"""
