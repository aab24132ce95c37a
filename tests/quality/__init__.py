"""Measuring lip-sync quality on rendered MP4s: sync, stability, closed mouths, frame strips.

``faces`` finds and tracks faces and measures mouth opening, ``metrics`` holds
the signal measurements, ``rules`` the issue's thresholds, ``inputs`` the
synthetic test media, ``scenarios`` renders each engine mode and measures it
(shared by ``tests/inference_service/test_quality_*.py`` and by
``tests.quality_report``), and ``strips`` draws frame strips for people to look at.
"""
