# Bash under ptalloc: arrays, associative arrays, string growth, command substitution.
declare -a arr
declare -A assoc
for ((i = 0; i < 60000; i++)); do
  arr[i]="element-$i-$((i * 7 % 1009))"
  assoc["k$i"]=$((i % 97))
done
s=""
for ((i = 0; i < 30000; i++)); do s+="x$i,"; done
echo "arr ${#arr[@]} ${arr[59999]} assoc ${#assoc[@]} ${assoc[k12345]} s ${#s}"
sum=0
for v in "${assoc[@]}"; do ((sum += v)); done
echo "sum $sum"
big=$(printf '%0500000d' 0)
echo "big ${#big}"
words=$(for ((i = 0; i < 20000; i++)); do echo "w$((i % 313))"; done | sort | uniq -c | wc -l)
echo "words $words"
unset 'arr[5]'
echo "after ${#arr[@]}"
