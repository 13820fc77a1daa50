set terminal pngcairo size 960,600 font 'DejaVu Sans,11'
set output 'cost_vs_length.png'
reset
set datafile separator ','
set logscale xy
set grid
set key top left
set format y '%.0e'
set xlabel 'document length L (tokens)'
set ylabel 'USD per request (compute at machine price; egress)'
set title 'cost per request vs L — qwen3-4b (lines: FLOP / fit model, points: measured)'
plot 'cost_curve.csv' using 'doc_tokens':'prefill_usd' with lines lw 2 lc rgb '#c0392b' title 'prefill (model)', \
     'cost_curve.csv' using 'doc_tokens':'reuse_usd' with lines lw 2 lc rgb '#27ae60' title 'reuse, a hit (fit)', \
     'cost_curve.csv' using 'doc_tokens':'egress_raw_usd' with lines lw 2 dt 2 lc rgb '#2c3e50' title 'egress, raw artifact', \
     'cost_curve.csv' using 'doc_tokens':'egress_lossless_usd' with lines lw 2 dt 3 lc rgb '#8e44ad' title 'egress, lossless artifact', \
     'costs.csv' using 'doc_tokens':'prefill_usd' with points pt 7 ps 1.3 lc rgb '#c0392b' title 'prefill (measured)', \
     'costs.csv' using 'doc_tokens':'reuse_hit_usd' with points pt 7 ps 1.3 lc rgb '#27ae60' title 'reuse, a hit (measured)', \
     'costs.csv' using 'doc_tokens':'reuse_memory_usd' with points pt 5 ps 1.1 lc rgb '#16a085' title 'reuse, memory tier (measured)'

unset output
set terminal svg size 960,600 dynamic font 'DejaVu Sans,11'
set output 'cost_vs_length.svg'
reset
set datafile separator ','
set logscale xy
set grid
set key top left
set format y '%.0e'
set xlabel 'document length L (tokens)'
set ylabel 'USD per request (compute at machine price; egress)'
set title 'cost per request vs L — qwen3-4b (lines: FLOP / fit model, points: measured)'
plot 'cost_curve.csv' using 'doc_tokens':'prefill_usd' with lines lw 2 lc rgb '#c0392b' title 'prefill (model)', \
     'cost_curve.csv' using 'doc_tokens':'reuse_usd' with lines lw 2 lc rgb '#27ae60' title 'reuse, a hit (fit)', \
     'cost_curve.csv' using 'doc_tokens':'egress_raw_usd' with lines lw 2 dt 2 lc rgb '#2c3e50' title 'egress, raw artifact', \
     'cost_curve.csv' using 'doc_tokens':'egress_lossless_usd' with lines lw 2 dt 3 lc rgb '#8e44ad' title 'egress, lossless artifact', \
     'costs.csv' using 'doc_tokens':'prefill_usd' with points pt 7 ps 1.3 lc rgb '#c0392b' title 'prefill (measured)', \
     'costs.csv' using 'doc_tokens':'reuse_hit_usd' with points pt 7 ps 1.3 lc rgb '#27ae60' title 'reuse, a hit (measured)', \
     'costs.csv' using 'doc_tokens':'reuse_memory_usd' with points pt 5 ps 1.1 lc rgb '#16a085' title 'reuse, memory tier (measured)'

unset output
