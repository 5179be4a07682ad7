"""Collectors: one room each; every one turns one API (or the session pages) into families."""
