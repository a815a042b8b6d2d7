"""Label quality (failure mode 4): annotations import, consensus without averaging, escalation,
annotator reliability and automatic label-error detection. The registered checks live in
:mod:`ftprep.checks.labels`; agreement statistics in :mod:`ftprep.agreement`."""
