# Perl under ptalloc: big hashes and arrays, string building, sorting, large strings.
use strict;
use warnings;
my %h;
for my $i (0 .. 299_999) {
    $h{"key$i"} = [$i, "value" x (1 + $i % 4)];
}
my @keys = sort { $h{$a}[0] % 1009 <=> $h{$b}[0] % 1009 or $a cmp $b } keys %h;
print "hash ", scalar(keys %h), " first $keys[0] last $keys[-1]\n";
my $big = "";
$big .= sprintf("%08d,", $_) for 0 .. 999_999;
print "big ", length($big), " ", substr($big, -18), "\n";
my @parts = split /,/, $big;
print "split ", scalar(@parts), "\n";
my $huge = "x" x (32 * 1024 * 1024);
print "huge ", length($huge), "\n";
my %count;
$count{$_ % 97}++ for map { $_ * 7 } 0 .. 499_999;
print "count ", join(",", map { "$_=$count{$_}" } (0 .. 4)), "\n";
delete $h{"key$_"} for grep { $_ % 2 } 0 .. 299_999;
print "left ", scalar(keys %h), "\n";
