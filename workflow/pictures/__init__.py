"""Pictures: the protocol's state diagram (graphviz) and a patient's course timeline (SVG, PDF)."""
