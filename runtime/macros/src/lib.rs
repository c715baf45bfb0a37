//! `#[actor::remote]`: turns a function into a typed remote function.
//!
//! The macro stays thin: it generates a handle type, a `RemoteFn` impl and a
//! registry entry, and leaves decoding, panics and errors to the `actor` library.

use proc_macro::TokenStream;
use quote::{format_ident, quote};
use syn::spanned::Spanned;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{Expr, FnArg, ItemFn, ReturnType, parse_macro_input, parse_quote_spanned};

/// Makes a function callable in other actors.
///
/// The function keeps its name but becomes a zero-sized handle: pass it to
/// `Portal::run`, `Nursery::run_in_actor` and friends; call it in this process
/// with `name::call_local(args..)`. Its parameters must be owned, serde types; it
/// must return `Result<T, E>` with `T` serializable and `E` an error type:
/// `actor::Result<T>`, `anyhow::Result<T>`, or any `std::error::Error + Send +
/// Sync + 'static`. A plain `fn` runs on the blocking pool; an `async fn` runs
/// on the actor's runtime.
///
/// In a function declared `-> actor::Result<T>` (spelled so, or
/// `Result<T, actor::Error>`), `?` converts any `std::error::Error + Send +
/// Sync + 'static` into an `actor::Error`, as `anyhow` does: the macro routes
/// each `?` of the function's own body (not those inside closures or `async`
/// blocks, which return elsewhere) through `actor::Error::app`.
///
/// An `async fn` whose last parameter is an `actor::Yielder<T>` is a stream
/// function (open it with `Portal::open_stream_from`); one whose last parameter
/// is an `actor::Context<S, Out, In>` is a context function (open it with
/// `Portal::open_context`). The special parameter is not part of the arguments.
///
/// `#[actor::remote(idempotent)]` declares that running the function more
/// than once has the effect of running it once: it implements
/// `actor::Idempotent` for the handle, which `Portal::run_with_retry`
/// requires. Only plain (not stream or context) functions can be idempotent.
#[proc_macro_attribute]
pub fn remote(attr: TokenStream, item: TokenStream) -> TokenStream {
    let attr = proc_macro2::TokenStream::from(attr);
    let idempotent = match attr.to_string().as_str() {
        "" => false,
        "idempotent" => true,
        _ => {
            return syn::Error::new(attr.span(), "#[actor::remote] takes no arguments but `idempotent`")
                .to_compile_error()
                .into();
        }
    };
    let func = parse_macro_input!(item as ItemFn);
    match expand(func, idempotent) {
        Ok(ts) => ts.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

/// The serve function and registry entry of a stream or context function: its
/// last, special parameter (the yielder or context) is handed over by the
/// library, the others are decoded from the call's arguments.
fn with_io(
    name: &syn::Ident,
    remote_trait: proc_macro2::TokenStream,
    serve: proc_macro2::TokenStream,
    variant: proc_macro2::TokenStream,
    arg_names: &[syn::Ident],
    arg_types: &[Box<syn::Type>],
) -> proc_macro2::TokenStream {
    quote! {
        fn __actor_serve(
            args: ::actor::__private::Bytes,
            io: ::actor::__private::ServedIo,
        ) -> ::actor::__private::Served {
            ::actor::__private::#serve(
                <#name as ::actor::#remote_trait>::NAME,
                args,
                io,
                |(#(#arg_names,)*): (#(#arg_types,)*), special| #name::call_local(#(#arg_names,)* special),
            )
        }
        ::actor::__private::inventory::submit! {
            ::actor::__private::Registration::new(
                <#name as ::actor::#remote_trait>::NAME,
                ::actor::__private::Handler::#variant(__actor_serve),
            )
        }
    }
}

/// Whether `ty` is spelled `actor::Result<..>` or `Result<T, actor::Error>`:
/// the signatures whose `?` the macro may widen. Spelling is all a macro sees,
/// so an imported alias (`use actor::Result`) is not recognised.
fn is_actor_result(ty: &syn::Type) -> bool {
    let syn::Type::Path(p) = ty else { return false };
    let names: Vec<String> = p.path.segments.iter().map(|s| s.ident.to_string()).collect();
    let Some(last) = p.path.segments.last() else { return false };
    if names == ["actor", "Result"] {
        return true;
    }
    if last.ident != "Result" {
        return false;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else { return false };
    matches!(args.args.iter().nth(1), Some(syn::GenericArgument::Type(syn::Type::Path(e)))
        if e.path.segments.iter().map(|s| s.ident.to_string()).collect::<Vec<_>>() == ["actor", "Error"])
}

/// Rewrites `expr?` into `::actor::__private::lift(expr)?` in a function body,
/// leaving closures, `async` blocks and nested items (whose `?` returns from
/// them, not from the remote function) alone.
struct LiftTry;

impl VisitMut for LiftTry {
    fn visit_expr_mut(&mut self, e: &mut Expr) {
        match e {
            Expr::Closure(_) | Expr::Async(_) => {}
            Expr::Try(t) => {
                self.visit_expr_mut(&mut t.expr);
                let inner = &t.expr;
                let span = t.question_token.span;
                *t.expr = parse_quote_spanned!(span=> ::actor::__private::lift(#inner));
            }
            _ => syn::visit_mut::visit_expr_mut(self, e),
        }
    }

    fn visit_item_mut(&mut self, _: &mut syn::Item) {}
}

/// Finds what a parameter type cannot be: a reference, a lifetime, `impl Trait`.
/// Arguments are decoded from a message into owned values, so nothing may
/// borrow, and the handle needs one concrete type per parameter.
struct ParamCheck(Option<syn::Error>);

impl ParamCheck {
    fn fail(&mut self, span: proc_macro2::Span, msg: &str) {
        if self.0.is_none() {
            self.0 = Some(syn::Error::new(span, msg));
        }
    }
}

impl<'a> Visit<'a> for ParamCheck {
    fn visit_type_reference(&mut self, r: &'a syn::TypeReference) {
        self.fail(
            r.span(),
            "remote function parameters must be owned: arguments arrive in a message and are decoded \
             into new values; take `String` instead of `&str`, `Vec<T>` instead of `&[T]`, `T` instead of `&T`",
        );
    }
    fn visit_lifetime(&mut self, l: &'a syn::Lifetime) {
        // `'static` borrows nothing: `Cow<'static, str>` decodes into an owned value.
        if l.ident == "static" {
            return;
        }
        self.fail(
            l.span(),
            "remote function parameters cannot borrow (no lifetimes): arguments are decoded into owned values",
        );
    }
    fn visit_type_impl_trait(&mut self, t: &'a syn::TypeImplTrait) {
        self.fail(t.span(), "remote function parameters need concrete types, not `impl Trait`");
    }
}

/// The last path segment of a type, e.g. `Yielder` for `actor::Yielder<u64>`.
fn last_segment(ty: &syn::Type) -> Option<String> {
    match ty {
        syn::Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}

fn expand(mut func: ItemFn, idempotent: bool) -> syn::Result<proc_macro2::TokenStream> {
    if let ReturnType::Type(_, ty) = &func.sig.output {
        if is_actor_result(ty) {
            LiftTry.visit_block_mut(&mut func.block);
        }
    }
    let sig = &func.sig;
    if let Some(l) = sig.generics.lifetimes().next() {
        return Err(syn::Error::new(
            l.span(),
            "remote functions cannot borrow (no lifetime parameters): arguments are decoded into owned values",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "remote functions cannot be generic: a child finds the function by name, so it needs one concrete signature",
        ));
    }
    let ret = match &sig.output {
        ReturnType::Type(_, ty) => ty.clone(),
        ReturnType::Default => {
            return Err(syn::Error::new(
                sig.span(),
                "remote functions must return a Result, e.g. actor::Result<T>",
            ));
        }
    };
    let mut arg_types = Vec::new();
    for arg in &sig.inputs {
        match arg {
            FnArg::Receiver(r) => return Err(syn::Error::new(r.span(), "remote functions cannot take self")),
            FnArg::Typed(pat) => {
                let mut check = ParamCheck(None);
                check.visit_type(&pat.ty);
                if let Some(e) = check.0 {
                    return Err(e);
                }
                arg_types.push(pat.ty.clone())
            }
        }
    }
    // A last parameter of type `Yielder<T>` makes a stream function, one of type
    // `Context<S, Out, In>` a context function.
    let special = arg_types.last().and_then(|t| last_segment(t)).filter(|s| s == "Yielder" || s == "Context");
    let special_ty = match special {
        Some(_) => {
            if sig.asyncness.is_none() {
                return Err(syn::Error::new(sig.span(), "stream and context functions must be async"));
            }
            arg_types.pop()
        }
        None => None,
    };
    if idempotent && special.is_some() {
        return Err(syn::Error::new(
            sig.span(),
            "only plain remote functions can be idempotent, not streams or contexts",
        ));
    }
    // Spanned on the return type, so a type that is not a `Result` (or whose
    // error the runtime cannot send) is pointed at where it is written.
    let output = quote::quote_spanned!(ret.span()=> <#ret as ::actor::__private::CallResult>::Ok);
    let arg_names: Vec<_> = (0..arg_types.len()).map(|i| format_ident!("__arg{i}")).collect();
    let vis = &func.vis;
    let name = &sig.ident;
    let name_str = name.to_string();
    let docs: Vec<_> = func.attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let other_attrs: Vec<_> = func.attrs.iter().filter(|a| !a.path().is_ident("doc")).collect();
    let mut local_sig = sig.clone();
    local_sig.ident = format_ident!("call_local");
    let body = &func.block;
    let name_const = quote!(::core::concat!(::core::module_path!(), "::", #name_str));
    let (trait_impl, serve_fn) = match (special.as_deref(), &special_ty) {
        (Some("Yielder"), Some(ty)) => (
            quote! {
                impl ::actor::RemoteStreamFn for #name {
                    type Args = (#(#arg_types,)*);
                    type Item = <#ty as ::actor::__private::StreamParam>::Item;
                    const NAME: &'static str = #name_const;
                }
            },
            with_io(
                name,
                quote!(RemoteStreamFn),
                quote!(serve_stream),
                quote!(Stream),
                &arg_names,
                &arg_types,
            ),
        ),
        (Some(_), Some(ty)) => (
            quote! {
                impl ::actor::RemoteContextFn for #name {
                    type Args = (#(#arg_types,)*);
                    type Started = <#ty as ::actor::__private::ContextParam>::Started;
                    type ToCaller = <#ty as ::actor::__private::ContextParam>::ToCaller;
                    type ToCallee = <#ty as ::actor::__private::ContextParam>::ToCallee;
                    type Output = #output;
                    const NAME: &'static str = #name_const;
                }
            },
            with_io(
                name,
                quote!(RemoteContextFn),
                quote!(serve_context),
                quote!(Context),
                &arg_names,
                &arg_types,
            ),
        ),
        _ => {
            let serve = if sig.asyncness.is_some() { quote!(serve_async) } else { quote!(serve_blocking) };
            (
                quote! {
                    impl ::actor::RemoteFn for #name {
                        type Args = (#(#arg_types,)*);
                        type Output = #output;
                        const NAME: &'static str = #name_const;
                    }
                },
                quote! {
                    fn __actor_serve(args: ::actor::__private::Bytes) -> ::actor::__private::Served {
                        ::actor::__private::#serve(
                            <#name as ::actor::RemoteFn>::NAME,
                            args,
                            |(#(#arg_names,)*): (#(#arg_types,)*)| #name::call_local(#(#arg_names),*),
                        )
                    }
                    ::actor::__private::inventory::submit! {
                        ::actor::__private::Registration::new(
                            <#name as ::actor::RemoteFn>::NAME,
                            ::actor::__private::Handler::Single(__actor_serve),
                        )
                    }
                },
            )
        }
    };

    let idempotent_impl = if idempotent { quote!(impl ::actor::Idempotent for #name {}) } else { quote!() };
    Ok(quote! {
        #(#docs)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        #vis struct #name;

        impl #name {
            /// Runs the function in this process, as a plain call.
            #(#other_attrs)*
            #vis #local_sig #body
        }

        #trait_impl

        #idempotent_impl

        const _: () = {
            #serve_fn
        };
    })
}
