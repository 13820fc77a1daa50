set terminal pngcairo size 960,600 font 'DejaVu Sans,11'
set output 'time_vs_length.png'
reset
set datafile separator ','
set logscale xy
set grid
set key top left
set xlabel 'document length L (tokens)'
set ylabel 'seconds to the first token (median, min–max)'
set title 'prefill from scratch vs reuse — qwen3-4b'
plot 'reuse.csv' using 'doc_tokens':'scratch_s':'scratch_min':'scratch_max' with yerrorlines lw 2 pt 7 lc rgb '#c0392b' title 'prefill L + question', \
     'reuse.csv' using 'doc_tokens':'resident_s':'resident_min':'resident_max' with yerrorlines lw 2 pt 15 lc rgb '#d35400' title 'reuse: resident pages (Attach) + question', \
     'reuse.csv' using 'doc_tokens':'memory_s':'memory_min':'memory_max' with yerrorlines lw 2 pt 5 lc rgb '#27ae60' title 'reuse: memory tier + question', \
     'reuse.csv' using 'doc_tokens':'disk_raw_s':'disk_raw_min':'disk_raw_max' with yerrorlines lw 2 pt 9 lc rgb '#2980b9' title 'reuse: disk tier, raw', \
     'reuse.csv' using 'doc_tokens':'disk_lossless_s':'disk_lossless_min':'disk_lossless_max' with yerrorlines lw 2 pt 11 lc rgb '#8e44ad' title 'reuse: disk tier, lossless'

unset output
set terminal svg size 960,600 dynamic font 'DejaVu Sans,11'
set output 'time_vs_length.svg'
reset
set datafile separator ','
set logscale xy
set grid
set key top left
set xlabel 'document length L (tokens)'
set ylabel 'seconds to the first token (median, min–max)'
set title 'prefill from scratch vs reuse — qwen3-4b'
plot 'reuse.csv' using 'doc_tokens':'scratch_s':'scratch_min':'scratch_max' with yerrorlines lw 2 pt 7 lc rgb '#c0392b' title 'prefill L + question', \
     'reuse.csv' using 'doc_tokens':'resident_s':'resident_min':'resident_max' with yerrorlines lw 2 pt 15 lc rgb '#d35400' title 'reuse: resident pages (Attach) + question', \
     'reuse.csv' using 'doc_tokens':'memory_s':'memory_min':'memory_max' with yerrorlines lw 2 pt 5 lc rgb '#27ae60' title 'reuse: memory tier + question', \
     'reuse.csv' using 'doc_tokens':'disk_raw_s':'disk_raw_min':'disk_raw_max' with yerrorlines lw 2 pt 9 lc rgb '#2980b9' title 'reuse: disk tier, raw', \
     'reuse.csv' using 'doc_tokens':'disk_lossless_s':'disk_lossless_min':'disk_lossless_max' with yerrorlines lw 2 pt 11 lc rgb '#8e44ad' title 'reuse: disk tier, lossless'

unset output
set terminal pngcairo size 960,600 font 'DejaVu Sans,11'
set output 'ratio_vs_length.png'
reset
$paper << EOD
255,9
3774,49.7
EOD
set datafile separator ','
set logscale xy
set grid
set key top left
set xlabel 'document length L (tokens)'
set ylabel 'prefill time / reuse time'
set title 'reuse speed-up vs L — qwen3-4b (bit-exact runs only)'
plot 'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_resident') : NaN) with linespoints lw 2 pt 15 lc rgb '#d35400' title 'resident pages (Attach)', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_memory') : NaN) with linespoints lw 2 pt 5 lc rgb '#27ae60' title 'memory tier', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_raw') : NaN) with linespoints lw 2 pt 9 lc rgb '#2980b9' title 'disk tier, raw', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_lossless') : NaN) with linespoints lw 2 pt 11 lc rgb '#8e44ad' title 'disk tier, lossless', \
     'reuse.csv' using 'doc_tokens':'ratio_llamacpp' with linespoints lw 2 pt 13 lc rgb '#e67e22' title 'llama.cpp, same weights and tokens (load state + question)', \
     $paper using 1:2 with points pt 3 ps 2 lc rgb '#7f8c8d' title 'paper (published): Qwen3-4B fp16, M1 Pro GPU'

unset output
set terminal svg size 960,600 dynamic font 'DejaVu Sans,11'
set output 'ratio_vs_length.svg'
reset
$paper << EOD
255,9
3774,49.7
EOD
set datafile separator ','
set logscale xy
set grid
set key top left
set xlabel 'document length L (tokens)'
set ylabel 'prefill time / reuse time'
set title 'reuse speed-up vs L — qwen3-4b (bit-exact runs only)'
plot 'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_resident') : NaN) with linespoints lw 2 pt 15 lc rgb '#d35400' title 'resident pages (Attach)', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_memory') : NaN) with linespoints lw 2 pt 5 lc rgb '#27ae60' title 'memory tier', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_raw') : NaN) with linespoints lw 2 pt 9 lc rgb '#2980b9' title 'disk tier, raw', \
     'reuse.csv' using 'doc_tokens':(column('exact') > 0 ? column('ratio_disk_lossless') : NaN) with linespoints lw 2 pt 11 lc rgb '#8e44ad' title 'disk tier, lossless', \
     'reuse.csv' using 'doc_tokens':'ratio_llamacpp' with linespoints lw 2 pt 13 lc rgb '#e67e22' title 'llama.cpp, same weights and tokens (load state + question)', \
     $paper using 1:2 with points pt 3 ps 2 lc rgb '#7f8c8d' title 'paper (published): Qwen3-4B fp16, M1 Pro GPU'

unset output
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
