using System.Runtime.InteropServices;

namespace RealtimeAssistant.Cli.App;

/// <summary>
/// Ctrl+C (SIGINT) and SIGTERM as a cancellation token for the app commands. System.CommandLine
/// 2.0.0 installs no termination handler unless asked, so without this the first Ctrl+C kills
/// the process mid-write. The first signal cancels (outputs are finished cleanly); a second one
/// is left to the default and ends the process at once.
/// </summary>
public sealed class Interrupt : IDisposable
{
    readonly CancellationTokenSource cts;
    readonly PosixSignalRegistration? sigint, sigterm;
    int signals;

    public CancellationToken Token => cts.Token;
    public bool Requested => signals > 0;

    public Interrupt(CancellationToken outer)
    {
        cts = CancellationTokenSource.CreateLinkedTokenSource(outer);
        try
        {
            sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
            sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        }
        catch (PlatformNotSupportedException) { /* the outer token is all there is */ }
    }

    void OnSignal(PosixSignalContext context)
    {
        if (Interlocked.Increment(ref signals) > 1) return;   // second signal: default action
        context.Cancel = true;
        Console.Error.WriteLine(context.Signal == PosixSignal.SIGINT ? "\ninterrupting: finishing the outputs (Ctrl+C again to quit at once)…" : "\nterminating: finishing the outputs…");
        cts.Cancel();
    }

    public void Dispose()
    {
        sigint?.Dispose();
        sigterm?.Dispose();
        cts.Dispose();
    }
}
