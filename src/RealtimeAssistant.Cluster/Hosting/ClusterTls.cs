using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;

namespace RealtimeAssistant.Cluster;

/// <summary>
/// TLS on the cluster's own connections (Microsoft.Orleans.Connections.Security). With a shared
/// certificate (--cluster-cert), a peer is accepted only when it presents that same certificate:
/// encryption and authentication. Without one, each process makes a self-signed certificate at
/// start and accepts any peer's: encryption only.
/// </summary>
public static class ClusterTls
{
    public static X509Certificate2 Certificate(ClusterSettings s)
    {
        if (s.Certificate is { } path)
        {
            try
            {
                var cert = X509CertificateLoader.LoadPkcs12FromFile(path, s.CertificatePassword, X509KeyStorageFlags.EphemeralKeySet);
                if (!cert.HasPrivateKey) throw new UserError($"--cluster-cert {path} has no private key (a PKCS#12 file with the key is needed)");
                return cert;
            }
            catch (CryptographicException e) { throw new UserError($"--cluster-cert {path} could not be read: {e.Message} (a PKCS#12 file; its password in RA_CLUSTER_CERT_PASSWORD)"); }
        }
        return SelfSigned($"CN=ra-cluster-{s.ClusterId}-{Environment.ProcessId}");
    }

    public static X509Certificate2 SelfSigned(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1"), new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var cert = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddYears(1));
        // Round-trip through PKCS#12 so the key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(cert.Export(X509ContentType.Pkcs12), null, X509KeyStorageFlags.EphemeralKeySet);
    }

    /// <summary>The options both ends use: pin the shared certificate, or accept any (self-signed) peer.</summary>
    public static void Configure(TlsOptions o, X509Certificate2 cert, bool shared)
    {
        o.LocalCertificate = cert;
        o.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        o.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        if (shared)
        {
            var pinned = cert.GetCertHash(HashAlgorithmName.SHA256);
            o.RemoteCertificateValidation = (remote, _, _) => remote.GetCertHash(HashAlgorithmName.SHA256).AsSpan().SequenceEqual(pinned);
        }
        else o.AllowAnyRemoteCertificate();
    }
}
