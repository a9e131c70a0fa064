"""localcluster: the local Kubernetes + registry world that urm.training is tested against."""
