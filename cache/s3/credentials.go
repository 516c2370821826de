package s3

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Instance-metadata lookups are variables for tests. The probe is
// bounded: off EC2/ECS, 169.254.169.254 may swallow packets, and a
// machine without credentials must hear so at once, not after minutes.
var (
	imdsEndpoint     = "" // minio-go's default (169.254.169.254, or the ECS/EKS variables)
	imdsProbeTimeout = time.Second
	imdsTimeout      = 5 * time.Second // each later refresh
)

// primed is a provider whose first Retrieve returns the value already
// fetched while probing the chain, so that finding the credentials does
// not fetch them twice; later ones (after expiry) ask the provider again.
type primed struct {
	credentials.Provider
	first *credentials.Value
}

func (p *primed) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	if p.first != nil { // Credentials serialises calls: no lock needed
		v := *p.first
		p.first = nil
		return v, nil
	}
	return p.Provider.RetrieveWithCredContext(cc)
}

func (p *primed) Retrieve() (credentials.Value, error) { return p.RetrieveWithCredContext(nil) }

// resolveCredentials finds the credentials the way operators expect, and
// says where it found them:
//  1. --credentials-file (o.Env), never exported to the process;
//  2. with ?profile=P, section [P] of the shared credentials file, then
//     the environment; without, the environment, then [$AWS_PROFILE or
//     default] of that file (as Nix's AWS SDK does);
//  3. an EC2 instance role or ECS/EKS task role, refreshed before its
//     session token expires (skipped with AWS_EC2_METADATA_DISABLED=true
//     unless a container variable asks for it).
//
// Errors never echo credential values.
func resolveCredentials(ctx context.Context, profile string, o Options) (*credentials.Credentials, string, error) {
	getenv := func(k string) string {
		if v, ok := o.Env[k]; ok {
			return v
		}
		return os.Getenv(k)
	}
	envFile := "--credentials-file"
	if o.EnvFile != "" {
		envFile += " " + o.EnvFile
	}
	if id, secret := o.Env["AWS_ACCESS_KEY_ID"], o.Env["AWS_SECRET_ACCESS_KEY"]; id != "" || secret != "" {
		if id == "" || secret == "" {
			return nil, "", fmt.Errorf("%s sets only one of AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; set both", envFile)
		}
		if o.EnvFile != "" && o.ReadEnvFile != nil {
			return credentials.New(newEnvFileCreds(o.EnvFile, o.ReadEnvFile, o.Env)), envFile, nil
		}
		return credentials.NewStaticV4(id, secret, o.Env["AWS_SESSION_TOKEN"]), envFile, nil
	}

	fromEnv := func() (*credentials.Credentials, string) {
		id, secret := os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, ""
		}
		return credentials.NewStaticV4(id, secret, os.Getenv("AWS_SESSION_TOKEN")), "environment (AWS_ACCESS_KEY_ID)"
	}
	file := credentialsFile(getenv)
	section := profile
	if section == "" {
		section = cmp.Or(getenv("AWS_PROFILE"), "default")
	}
	fromFile := func() (*credentials.Credentials, string) {
		p := &credentials.FileAWSCredentials{Filename: file, Profile: section}
		// A profile may run credential_process or use SSO: let those
		// refresh, and bound nothing but what the caller bounds.
		v, err := p.RetrieveWithCredContext(&credentials.CredContext{Client: http.DefaultClient, Context: ctx})
		if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
			return nil, ""
		}
		return credentials.New(&primed{Provider: p, first: &v}), fmt.Sprintf("%s [%s]", file, section)
	}
	order := []func() (*credentials.Credentials, string){fromEnv, fromFile}
	if profile != "" {
		order = []func() (*credentials.Credentials, string){fromFile, fromEnv}
	}
	for _, f := range order {
		if c, src := f(); c != nil {
			return c, src, nil
		}
	}
	if c, src := fromRole(ctx, getenv); c != nil {
		return c, src, nil
	}
	if o.Anonymous && profile == "" && o.Env == nil {
		return credentials.NewStatic("", "", "", credentials.SignatureAnonymous), SourceAnonymous, nil
	}

	where := "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	if profile != "" {
		return nil, "", fmt.Errorf("no S3 credentials: profile [%s] not found in %s and %s not set (add aws_access_key_id/aws_secret_access_key under [%s])", profile, file, where, profile)
	}
	inFile := ""
	if o.Env != nil {
		inFile = fmt.Sprintf(" (%s has no AWS_ACCESS_KEY_ID)", envFile)
	}
	return nil, "", fmt.Errorf("no S3 credentials: give --credentials-file FILE%s, set %s, add a [%s] section to %s, or use ?profile=NAME; no instance role answered either", inFile, where, section, file)
}

// SourceAnonymous is the credential source of Options.Anonymous access.
const SourceAnonymous = "anonymous access (no credentials found)"

// Where role credentials come from; all three renew their sessions.
const (
	srcIMDS        = "instance role (IMDS)"
	srcECS         = "container role (ECS)"
	srcWebIdentity = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
)

// fromRole asks the instance metadata service (or the ECS/EKS credential
// endpoint the environment names) for role credentials, within
// imdsProbeTimeout. The credentials it returns refresh themselves.
func fromRole(ctx context.Context, getenv func(string) string) (*credentials.Credentials, string) {
	src := srcIMDS
	switch {
	case os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		src = srcWebIdentity
	case os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "" || os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "":
		src = srcECS
	default:
		if off, _ := strconv.ParseBool(getenv("AWS_EC2_METADATA_DISABLED")); off {
			return nil, ""
		}
	}
	iam := &credentials.IAM{Client: probeClient(imdsTimeout), Endpoint: imdsEndpoint}
	pctx, cancel := context.WithTimeout(ctx, imdsProbeTimeout)
	defer cancel()
	v, err := iam.RetrieveWithCredContext(&credentials.CredContext{Client: iam.Client, Context: pctx})
	if err != nil || v.AccessKeyID == "" || v.SecretAccessKey == "" {
		slog.Debug("no role credentials", "from", src, "err", err)
		return nil, ""
	}
	return credentials.New(&primed{Provider: iam, first: &v}), src
}

// probeClient is the HTTP client for metadata credential lookups:
// link-local, so never through a proxy, and bounded.
func probeClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:       nil,
			DialContext: (&net.Dialer{Timeout: timeout}).DialContext,
		},
	}
}

// credentialsFile is the AWS shared credentials file.
func credentialsFile(getenv func(string) string) string {
	if f := getenv("AWS_SHARED_CREDENTIALS_FILE"); f != "" {
		return f
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".aws", "credentials")
}
