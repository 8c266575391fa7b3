namespace RealtimeAssistant;

/// <summary>
/// A mistake in what the user gave us (a missing or corrupt file, a bad argument, an unsupported
/// codec). The CLI prints <see cref="Exception.Message"/> as one line and exits non-zero, with no
/// stack trace. Messages name the thing at fault and, where possible, what would be accepted.
/// </summary>
public sealed class UserError : Exception
{
    public UserError(string message) : base(message) { }
    public UserError(string message, Exception inner) : base(message, inner) { }
}
