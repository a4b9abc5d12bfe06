"""Tests of bungalow.guest: the agent, its protocol and the host channel."""
