"""In-silico trials: virtual CLL patients dosed by a protocol, watched by dosewatch's own monitor.

``params`` (cited parameters), ``population`` (virtual patients as arrays), ``physiology`` (the daily
model), ``marrow`` (Friberg neutrophils and platelets), ``loop`` (protocol dosing, lab draws, the
monitor and its dose actions), ``outcomes`` (rates with intervals), ``scenario`` (scenario files and
runs), ``cli`` (``dosewatch insilico``).
"""
