namespace RealtimeAssistant.Demo;

/// <summary>
/// A tiny fast PRNG for per-pixel noise, where System.Random would dominate render time.
/// Fixed algorithm, so pixels are the same on every machine and .NET version.
/// </summary>
internal struct XorShift
{
    private uint _s;

    public XorShift(int seed) => _s = (uint)seed * 2654435761u | 1u;

    public uint Next()
    {
        _s ^= _s << 13; _s ^= _s >> 17; _s ^= _s << 5;
        return _s;
    }

    public double NextDouble() => Next() / 4294967296.0;
}
