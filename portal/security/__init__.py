"""Secrets at rest and outbound URL checks."""
