"""`python -m dashboards`: regenerate dashboards/json/*.json."""

from dashboards.build import write

for path in write():
    print(path)
