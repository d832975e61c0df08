"""An adapter module whose framework is not installed."""
import not_an_installed_framework_xyz  # noqa: F401


class Adapter:
    name = "missing.framework"
    framework = "not-an-installed-framework-xyz"
