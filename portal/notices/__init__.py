"""notices feature package: reminders and lifecycle e-mails about an account's plan, sent once per event."""
