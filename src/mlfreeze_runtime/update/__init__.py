"""The bundle's updater (``<app>-update``): variant choice, verified side-by-side install, rollback.

Modules: ``variants`` (what a variant needs; the pure choice of one for a machine),
``machine`` (what this machine has, read without torch), ``http`` (the runtime's one HTTP
chokepoint: resume, bounded retries, sha256), ``index`` (the release index: per variant its
RECORD and where each content-addressed blob lies), ``pointer`` (the atomic ``current``
switch: a symlink on POSIX, a pointer file read by a launcher on Windows), ``install``
(stage, audit, accept, switch, health-check, roll back, keep N), ``trust`` (signed, expiring
metadata through python-tuf) and ``cli``. Standard library only, except ``trust``, which
imports ``tuf`` when a remote update is asked for.
"""
