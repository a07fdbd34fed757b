import mpmath as mp
mp.mp.prec = 600
v = int(mp.floor(2/mp.pi * mp.mpf(2)**(32*10)))
words = [(v >> (32*(9-i))) & 0xffffffff for i in range(10)]
print("2/pi words:", ", ".join("0x%08xu" % w for w in words))
def d(x): return float(x)
P1 = mp.mpf(float(mp.pi/2)); P2 = mp.mpf(float(mp.pi/2 - P1)); P3 = mp.mpf(float(mp.pi/2 - P1 - P2))
print("PIO2_1", float(P1).hex(), "PIO2_2", float(P2).hex(), "PIO2_3", float(P3).hex())
L1 = mp.mpf(float(mp.log(2))); L2 = mp.mpf(float(mp.log(2)-L1))
print("LN2_HI", float(L1).hex(), "LN2_LO", float(L2).hex(), "LOG2E", float(1/mp.log(2)).hex(), "2/pi", float(2/mp.pi).hex())
print("pi/2 * 2^-64", float(mp.pi/2 * mp.mpf(2)**-64).hex(), "sqrt2", float(mp.sqrt(2)).hex())
print("thresholds: exp overflow float", float(mp.log(mp.mpf(2)**128 - mp.mpf(2)**103)))
