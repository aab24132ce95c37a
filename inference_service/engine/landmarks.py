"""Indices into MediaPipe's 468-point face mesh (canonical topology, see face_mesh.py).

Left/right are as seen in the image: index 61 is the mouth corner on the
image's left, 291 the one on its right.
"""

from __future__ import annotations

MOUTH_CORNER_LEFT = 61
MOUTH_CORNER_RIGHT = 291
# Inner lip contours, from the left inner corner (78) to the right one (308).
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
# Outer lip contours, corner to corner.
OUTER_UPPER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291)
OUTER_LOWER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291)
LOWER_LIP_BOTTOM = 17
CHIN = 152
NOSE_TIP = 1
# Eye corners (outer) used for the in-plane rotation of the face.
EYE_OUTER_LEFT = 33
EYE_OUTER_RIGHT = 263
# Eyelids: upper lid centre and lower lid centre, per eye.
LEFT_EYE_UPPER = (246, 161, 160, 159, 158, 157, 173)
LEFT_EYE_LOWER = (33, 7, 163, 144, 145, 153, 154, 155, 133)
RIGHT_EYE_UPPER = (466, 388, 387, 386, 385, 384, 398)
RIGHT_EYE_LOWER = (263, 249, 390, 373, 374, 380, 381, 382, 362)
# Lower half of the face oval, jaw angle to jaw angle through the chin.
JAW = (132, 58, 172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397, 288, 361)
