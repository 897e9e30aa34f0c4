"""The management API (SPEC §8): Django REST framework views for keys, the team, usage,
statements and operators, under each of settings.API_MOUNTS."""
