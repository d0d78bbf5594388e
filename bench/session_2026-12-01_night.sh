#!/bin/bash
# quiet-box benchmark run of session 5 (2026-12-01 night)
cd /work/main
export MIXTURES_PROGRESSBAR=0
echo "== start $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg) commit $(git rev-parse --short HEAD)"
python bench/gibbs_engine.py --summary 2>&1 | grep -v Warn
python bench/gibbs_engine.py --sweep 2>&1 | grep -v Warn
for i in 1 2 3; do cd /tmp; /usr/bin/time -f "demo wall %e s, max RSS %M KB" python -m mixtures demo --quiet --out /tmp/demo_$i.png 2>&1 | grep -E "demo wall|fit in"; done
cd /tmp; for i in 1 2; do /usr/bin/time -f "import pymc alone: %e s" python -c "import pymc" 2>&1 | tail -1; done
python /work/main/bench/demo_stages.py 2>&1 | grep -v Warn
cd /work/main
python bench/gibbs_engine.py --ess 2>&1 | grep -v Warn
python bench/gibbs_engine.py --t 20000 2>&1 | grep -v Warn
python bench/gibbs_engine.py --t 100000 2>&1 | grep -v Warn
python bench/gibbs_engine.py --mvt 2>&1 | grep -v Warn
python bench/mvt_stages.py 20000 100000 2>&1 | grep -v "Warn\|RESULT"
python bench/gibbs_engine.py --missing 20000 2>&1 | grep -v Warn
python bench/gibbs_engine.py --missing 20000 --missing-d 4 2>&1 | grep -v Warn
echo "== end $(date -u +%H:%M:%S) load $(cut -d' ' -f1 /proc/loadavg)"
